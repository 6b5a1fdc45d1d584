//! The Platform API over deliveries: the log's filters and cursors, errors, tenancy, replays.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;

use crate::support::*;

const N1: &str = "100000000000001";
const N2: &str = "100000000000002";
const N3: &str = "100000000000003";
const N4: &str = "100000000000004";

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.get(&format!("{DELIVERIES}?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

async fn count(app: &TestApp, query: &str) -> usize {
    list(app, &format!("{query}&limit=100")).await["data"]
        .as_array()
        .unwrap()
        .len()
}

/// Follows a paging link (absolute URL) with the app's key.
async fn follow(app: &TestApp, link: &Value) -> Value {
    let url = link.as_str().expect("a paging link");
    assert!(url.starts_with(&app.base), "{url}");
    let path = &url[app.base.len()..];
    let (status, body) = app.get(path).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

async fn pause() {
    tokio::time::sleep(ms(5)).await;
}

async fn delivery_log_and_replays(backend: Backend) {
    let app = spawn(backend, |c| c.delivery.replay_limit = 20).await;
    let (_, other_key) = app.other_project().await;
    let (ok, down, theirs) = (
        Hook::start().await,
        Hook::start().await,
        Hook::start().await,
    );
    down.always(Reply::status(500));
    let n1 = app
        .connect(&app.api_key, N1, "200000000000001", Some(&ok.url))
        .await;
    let n2 = app
        .connect(&app.api_key, N2, "200000000000002", Some(&down.url))
        .await;
    let n3 = app
        .connect(&other_key, N3, "200000000000003", Some(&theirs.url))
        .await;
    let n4 = app.connect(&app.api_key, N4, "200000000000004", None).await;

    let t0 = chrono::Utc::now();
    pause().await;
    for i in 0..2 {
        app.post_webhook_ok(&n2.inbound(&format!("wamid.N2.{i}"), "down"))
            .await;
    }
    pause().await;
    let ta = chrono::Utc::now();
    pause().await;
    for i in 0..10 {
        app.post_webhook_ok(&n1.inbound(&format!("wamid.N1.{i}"), "up"))
            .await;
    }
    pause().await;
    let tb = chrono::Utc::now();
    pause().await;
    for i in 10..25 {
        app.post_webhook_ok(&n1.inbound(&format!("wamid.N1.{i}"), "up"))
            .await;
    }
    pause().await;
    let tc = chrono::Utc::now();
    for i in 0..2 {
        app.post_webhook_ok(&n3.inbound(&format!("wamid.N3.{i}"), "theirs"))
            .await;
    }
    // A number without a destination queues nothing.
    app.post_webhook_ok(&n4.inbound("wamid.N4", "kept only"))
        .await;

    ok.wait_for(25, ms(8000)).await;
    theirs.wait_for(2, ms(5000)).await;
    eventually(ms(8000), "everything settled", || async {
        let (_, their_done) = app
            .call_with_key(
                &other_key,
                Method::GET,
                &format!("{DELIVERIES}?status=succeeded"),
                None,
            )
            .await;
        let settled = count(&app, "status=succeeded").await == 25
            && count(&app, "status=dead").await == 2
            && their_done["data"].as_array().unwrap().len() == 2;
        settled.then_some(())
    })
    .await;

    // Filters.
    assert_eq!(count(&app, "status=pending").await, 0);
    assert_eq!(count(&app, "status=failed").await, 0);
    assert_eq!(
        count(&app, "x=1").await,
        27,
        "only this project's deliveries"
    );
    let dead = list(&app, "status=dead&limit=100").await;
    assert!(dead["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["phone_number_id"] == N2 && d["status"] == "dead"));
    let succeeded = list(&app, "status=succeeded&limit=100").await;
    assert!(succeeded["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["phone_number_id"] == N1));
    assert_eq!(count(&app, &format!("phone_number_id={N2}")).await, 2);
    assert_eq!(count(&app, &format!("phone_number_id={N4}")).await, 0);
    assert_eq!(
        count(&app, &format!("phone_number_id={N1}&status=dead")).await,
        0
    );
    assert_eq!(count(&app, &format!("since={}", q(tb))).await, 15);
    assert_eq!(count(&app, &format!("until={}", q(ta))).await, 2);
    assert_eq!(
        count(&app, &format!("since={}&until={}", q(ta), q(tb))).await,
        10
    );
    assert_eq!(
        count(
            &app,
            &format!("since={}&until={}&phone_number_id={N1}", q(t0), q(tc))
        )
        .await,
        25
    );
    assert_eq!(count(&app, &format!("since={}", q(tc))).await, 0);

    // Cursor paging over N1's 25, forward then back.
    let all = ids(&list(&app, &format!("phone_number_id={N1}&limit=100")).await);
    assert_eq!(all.len(), 25);
    let p1 = list(&app, &format!("phone_number_id={N1}&limit=10")).await;
    assert_eq!(p1["paging"]["previous"], Value::Null);
    assert_eq!(p1["paging"]["cursors"]["before"], Value::Null);
    let p2 = follow(&app, &p1["paging"]["next"]).await;
    let p3 = follow(&app, &p2["paging"]["next"]).await;
    assert_eq!(p3["paging"]["next"], Value::Null, "{p3}");
    assert_eq!(p3["paging"]["cursors"]["after"], Value::Null);
    let forward: Vec<String> = [&p1, &p2, &p3].iter().flat_map(|p| ids(p)).collect();
    assert_eq!(
        [&p1, &p2, &p3].map(|p| ids(p).len()),
        [10, 10, 5],
        "page sizes"
    );
    assert_eq!(
        forward, all,
        "forward pages: no duplicates, no gaps, newest first"
    );
    let b2 = follow(&app, &p3["paging"]["previous"]).await;
    assert_eq!(ids(&b2), ids(&p2));
    let b1 = list(
        &app,
        &format!(
            "phone_number_id={N1}&limit=10&before={}",
            b2["paging"]["cursors"]["before"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(ids(&b1), ids(&p1));
    assert_eq!(b1["paging"]["previous"], Value::Null, "{b1}");
    assert!(b1["paging"]["next"].is_string());

    // Bad parameters.
    let (_, their_page) = app
        .call_with_key(
            &other_key,
            Method::GET,
            &format!("{DELIVERIES}?limit=1"),
            None,
        )
        .await;
    let foreign_cursor = their_page["paging"]["cursors"]["after"]
        .as_str()
        .expect("their first page has a next one")
        .to_owned();
    for query in [
        "limit=0".to_owned(),
        "limit=101".to_owned(),
        "limit=ten".to_owned(),
        "status=bogus".to_owned(),
        "since=notatime".to_owned(),
        "until=2026-13-45".to_owned(),
        "after=bm90IGEgY3Vyc29y".to_owned(),
        "before=%%%".to_owned(),
        format!(
            "after={}&before={}",
            p1["paging"]["cursors"]["after"].as_str().unwrap(),
            p1["paging"]["cursors"]["after"].as_str().unwrap()
        ),
        format!("after={foreign_cursor}"),
    ] {
        let (status, body) = app.get(&format!("{DELIVERIES}?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }

    // Unknown, malformed and other projects' ids look alike.
    let (_, their_list) = app
        .call_with_key(&other_key, Method::GET, DELIVERIES, None)
        .await;
    let their_id = their_list["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, unknown) = app
        .get(&format!("{DELIVERIES}/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
    assert!(unknown["error"].is_string());
    for path in [
        format!("{DELIVERIES}/{their_id}"),
        format!("{DELIVERIES}/not-a-uuid"),
    ] {
        assert_eq!(app.get(&path).await, (404, unknown.clone()), "{path}");
    }
    let retry = |id: String| {
        let app = &app;
        async move {
            app.call(Method::POST, &format!("{DELIVERIES}/{id}/retry"), None)
                .await
        }
    };
    let unknown_retry = retry(uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(unknown_retry.0, 404);
    assert_eq!(retry(their_id.clone()).await, unknown_retry);
    let (_, theirs_after) = app
        .call_with_key(
            &other_key,
            Method::GET,
            &format!("{DELIVERIES}/{their_id}"),
            None,
        )
        .await;
    assert_eq!(
        theirs_after["data"]["status"],
        "succeeded",
        "{theirs_after:#} hits {}",
        theirs.hits().len()
    );
    assert_eq!(theirs_after["data"]["attempt_count"], 1);
    let unknown_number = app
        .get(&format!("{DELIVERIES}?phone_number_id=100000000000999"))
        .await;
    assert_eq!(unknown_number.0, 404);
    assert_eq!(
        app.get(&format!("{DELIVERIES}?phone_number_id={N3}")).await,
        unknown_number
    );

    // Replays: validation, tenancy, the limit.
    let replay = |pnid: &str, body: Value| {
        let (app, path) = (&app, format!("{NUMBERS}/{pnid}/webhook_replays"));
        async move { app.call(Method::POST, &path, Some(body)).await }
    };
    let since = iso(t0);
    for (pnid, body, field) in [
        (N1, json!({}), "since"),
        (N1, json!({"until": iso(tc)}), "since"),
        (N1, json!({"since": "notatime"}), "since"),
        (N1, json!({"since": iso(tb), "until": iso(ta)}), "until"),
        (N4, json!({"since": since}), "webhook_destination_url"),
    ] {
        let (status, response) = replay(pnid, body.clone()).await;
        assert_eq!(status, 422, "{body}: {response}");
        assert!(
            response["details"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["field"] == field),
            "{body}: {response}"
        );
    }
    let unknown_replay = replay("100000000000999", json!({"since": since})).await;
    assert_eq!(unknown_replay.0, 404);
    assert_eq!(replay(N3, json!({"since": since})).await, unknown_replay);

    let (status, response) = replay(
        N1,
        json!({"webhook_replay": {"since": iso(ta), "until": iso(tb)}}),
    )
    .await;
    assert_eq!(status, 202, "{response}");
    assert_eq!(response["data"]["queued"], 10);
    assert_eq!(response["data"]["truncated"], false);
    let (status, response) = replay(N1, json!({"since": since})).await;
    assert_eq!(status, 202, "{response}");
    assert_eq!(response["data"]["queued"], 20, "delivery.replay_limit");
    assert_eq!(response["data"]["truncated"], true);
    let hits = ok.wait_for(55, ms(8000)).await;
    let keys: HashSet<&str> = hits.iter().map(|h| h.header("x-idempotency-key")).collect();
    assert_eq!(
        keys.len(),
        25,
        "replays carry the original idempotency keys"
    );
    eventually(ms(8000), "replays delivered", || async {
        (count(&app, "status=succeeded").await == 55).then_some(())
    })
    .await;
    assert_eq!(
        theirs.hits().len(),
        2,
        "another project's receiver is untouched"
    );
}

crate::both_backends!(backend: delivery_log_and_replays);

/// `delivery.replay_limit` at its largest still replays (no overflow to "limit 0").
async fn replay_limit_at_its_maximum(backend: Backend) {
    let app = spawn(backend, |c| c.delivery.replay_limit = usize::MAX).await;
    let hook = Hook::start().await;
    let number = app
        .connect(&app.api_key, N1, "200000000000001", Some(&hook.url))
        .await;
    let since = chrono::Utc::now();
    app.post_webhook_ok(&number.inbound("wamid.MAX", "one"))
        .await;
    hook.wait_for(1, ms(5000)).await;
    let (status, response) = app
        .call(
            Method::POST,
            &format!("{NUMBERS}/{N1}/webhook_replays"),
            Some(json!({"since": iso(since)})),
        )
        .await;
    assert_eq!(status, 202, "{response}");
    assert_eq!(response["data"]["queued"], 1);
    assert_eq!(response["data"]["truncated"], false);
    hook.wait_for(2, ms(5000)).await;
}

crate::both_backends!(backend: replay_limit_at_its_maximum);
